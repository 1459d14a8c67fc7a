"""The learning features: the trace of the flow, step-by-step mode, /flow /flows /compare /setup,
the HAR and the diagram, and the `flask sf` commands. The core never imports this package."""
