"""The graph contract shared by the exporter and the runtime: one package, read as `realtime.contract`.

names: inputs, outputs, metadata keys and the checks both sides share; classifier: a classifier's
graph as the runtime reads it (ModelInfo); detector: a detector's (DetectorInfo).
"""

from realtime.contract.classifier import *  # noqa: F403
from realtime.contract.detector import *  # noqa: F403
from realtime.contract.names import *  # noqa: F403
