"""Eye analysis: landmark detectors, edge fitting, quality gates, measurements; ``analyse`` is the entry point."""
