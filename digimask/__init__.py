"""digimask: a DICOM privacy node that replaces patients' faces with an anonymous digital mask.

Components (each a subpackage, one folder at the repository root), data flowing one way:
``scp_node`` (the DICOM edge: receive, the worker loop, forward), ``storage`` (durable inbox, database,
quarantine), ``pipeline`` (pure: de-identify -> analyse -> fit -> render -> encode -> route), ``config``
(typed settings). ``evaluation`` measures the maskers; nothing in the node imports it.
"""
import pydicom

__version__ = "0.1.0"

# pydicom warns about malformed values by quoting them; header values may be PHI, so never let it. Set
# here, in the root package, because every component that parses DICOM imports through it.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
