"""edge-agent: sees and hears in the same moment, and only then speaks up."""

import os as _os

__version__ = "0.1.0"

# onnxruntime >= 1.29 ships telemetry on Linux that uploads to Microsoft and writes a device id
# (~/.cache/Microsoft/DeveloperTools) and a session file (.ses). Nothing but events leaves the
# box: the opt-out must be in the environment before onnxruntime initializes, so it is set
# here, before any module of the agent can import it (children inherit it too).
_os.environ["ORT_DISABLE_TELEMETRY"] = "1"
