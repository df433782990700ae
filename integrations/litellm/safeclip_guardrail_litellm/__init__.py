"""SafeCLIP as a LiteLLM proxy guardrail (native lifecycle hooks)."""

__all__: list[str] = []
