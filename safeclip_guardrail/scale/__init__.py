"""Scale out: scan image corpora (locally or with Ray Data) and serve with Ray Serve.

Needs the ``[ray]`` extra for ``engine="ray"`` and for :mod:`safeclip_guardrail.scale.serve`;
the local engine needs only ``pyarrow`` (which the extra also brings). The core package
never imports this one.
"""

from safeclip_guardrail.scale.output import SIDECAR, output_schema
from safeclip_guardrail.scale.scan import ScanSummary, scan_corpus
from safeclip_guardrail.scale.sources import Corpus, Unit, discover, sniff_image

__all__ = ["SIDECAR", "Corpus", "ScanSummary", "Unit", "discover", "output_schema",
           "scan_corpus", "sniff_image"]
