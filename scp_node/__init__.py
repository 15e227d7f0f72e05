"""The DICOM network edge: the Storage SCP that receives, and the Storage SCU that forwards."""
