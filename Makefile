# `sam build --template-file examples/template.yaml` runs the target named after the function's logical id
# (BuildMethod: makefile) and packages only what lands in $(ARTIFACTS_DIR): the SDK (without the local
# engine, the CLI, the testing toolkit, the execution views and the console, which a Lambda function never imports),
# the handler file, and the runtime dependencies of requirements.txt.
PIP_INSTALL ?= python3 -m pip install --quiet --disable-pip-version-check
SDK_ONLY = --exclude=__pycache__ --exclude=local --exclude=testing --exclude=cli --exclude=cli.py \
	--exclude=inspection --exclude=console --exclude=views.py

build-OrderWorkflowFunction:
	$(PIP_INSTALL) --requirement requirements.txt --target "$(ARTIFACTS_DIR)"
	tar -cf - $(SDK_ONLY) durable_sync | tar -xf - -C "$(ARTIFACTS_DIR)"
	mkdir -p "$(ARTIFACTS_DIR)/examples"
	cp examples/order_workflow.py "$(ARTIFACTS_DIR)/examples/"
