"""One module per input format. Each turns raw files into bronze rows, rejects and silver frames."""
