"""The administrator's console: a REST API under ``/api/v1`` and server-rendered pages over the same
operations as the command line, ``/metrics`` for Prometheus. Started by ``digimask serve`` beside the SCP.

It imports the storage, the configuration and the header stages only (never the pixel stages: no torch,
no MediaPipe in the node's main process on its account), and shows pseudonymous identifiers only; the
originals (previews, the pseudonym map) are for the ``privacy`` role, and every such view is audited.
"""
