"""The pieces of ``benchmarks/gpu_suite.py``: one prepared run of every GPU figure.

- ``_runner``: sections with their own time limits, progress on stderr, one JSON document
  (rewritten under ``$OUT`` after every section, so a run cut short still leaves one);
- ``_ctx``: what the sections share (device, real or ``--smoke`` sizes, one guard per dtype,
  timing with the GPU's queue drained); ``_headline``: the figures the docs quote;
- ``_env``: which card, driver, CUDA, torch and transformers ran it;
- ``_clip``: ViT-L/14-336 throughput, batch-1 latency (eager vs CUDA graph), whole path vs
  raw encoder, equivalence vs fp32, ``torch.compile``;
- ``_pictures``: whole-picture views vs the old centre crop, forwarding on vs off, PDF pages;
- ``_llava_next``: the fused LLaVA-NeXT guard (one tower pass over every view) vs a separate
  judge pass;
- ``_external``: the LLaVA-1.5-7B overhead benchmark and the CUDA-only tests, in the same JSON.
"""
