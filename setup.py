from setuptools import find_packages, setup

setup(
    # The import package is `durable_sync`; `durable-sync` on the package index is an unrelated project.
    name="lambda-durable-sync",
    version="0.1.0",
    description="A synchronous Python SDK for AWS Lambda durable functions, with an embedded local engine",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["durable_sync", "durable_sync.*"]),
    package_data={"durable_sync.inspection": ["timeline.html"],
                  "durable_sync.console": ["static/*"],  # the console's pages, CSS and JavaScript
                  "durable_sync.local": ["node/*.mjs"]},  # the Node.js bootstrap (node_runtime.py)
    python_requires=">=3.11",
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Programming Language :: Python :: 3.14",
    ],
    install_requires=[line.strip() for line in open("requirements.txt") if line.strip() and not line.startswith("#")],
    extras_require={"dev": ["pytest>=7", "freezegun>=1.2", "pyyaml>=6", "hypothesis>=6",
                            "aws-durable-execution-sdk-python>=3,<4", "aws-durable-execution-sdk-python-testing>=1.4,<2"],
                    "otel": ["opentelemetry-api>=1.20", "opentelemetry-sdk>=1.20"]},
    entry_points={
        "console_scripts": ["durable-sync=durable_sync.cli:main"],
        "pytest11": ["durable_sync=durable_sync.testing.plugin"],
        "durable_sync.plugins": ["otel=durable_sync.otel:OtelPlugin"],  # DURABLE_SYNC_PLUGINS=otel
    },
)
