"""What the service says about itself while it runs: Prometheus metrics, health and the
HTTP endpoint that serves them (``metrics``), and the progress line (``progress``)."""
