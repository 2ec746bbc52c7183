"""The provisioning steps, one module per family. They act through the context's funnels."""
