"""Reading the golden parity cases (format: ../shared/golden/README.md)."""
