"""SafeCLIP as a LiteLLM proxy guardrail (native lifecycle hooks: image-only requests judged).

In the proxy's ``config.yaml``::

    guardrails:
      - guardrail_name: safeclip
        litellm_params:
          guardrail: safeclip_guardrail_litellm.SafeCLIPLiteLLMGuardrail
          mode: pre_call
          default_on: true
          api_base: http://127.0.0.1:8000      # a `safeclip serve` URL (or safeclip_model: ...)
          api_key: os.environ/SAFECLIP_API_KEY
          safeclip_action: block               # or rewrite
"""

from safeclip_guardrail_litellm.guardrail import SafeCLIPLiteLLMGuardrail
from safeclip_guardrail_litellm.remote import GuardServiceError, RemoteGuard

__all__ = ["GuardServiceError", "RemoteGuard", "SafeCLIPLiteLLMGuardrail"]
