"""The processing stages: receive -> store -> de-identify -> analyse -> fit -> render -> encode -> route."""
