"""The trust boundary: what in a conversation is judged, and what is sent on.

:mod:`.extraction` finds every payload of every message (deny by default), :mod:`.forwarding`
writes back exactly what was judged, :mod:`.conversation` runs find -> judge -> policy ->
forward for many conversations at once. Framework-free; it imports no encoder (the guard
is passed in). Every surface (LangChain, LlamaIndex, NeMo, the service, LiteLLM) goes
through it; nothing else parses messages.
"""
