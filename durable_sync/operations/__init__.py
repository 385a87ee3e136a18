"""The operation layer: one module per operation kind over one ``OperationScope`` (``scope.py``).

``DurableContext`` (``durable_sync.context``) is a façade whose methods call these
modules with the context's scope; the modules use only the scope's public methods.
"""
