"""digimask: a DICOM privacy node that replaces patients' faces with an anonymous digital mask.

Components (each a subpackage, one folder at the repository root):
``scp_node`` (DICOM network edge), ``storage`` (durable inbox, database, quarantine),
``pipeline`` (de-identify -> analyse -> fit -> render -> encode -> route), ``config`` (typed settings).
"""

__version__ = "0.1.0"
