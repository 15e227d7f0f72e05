"""DICOM in and out: read a file, decode pixels, header facts for the analysis, encode the output, the DIGIMASK block."""
