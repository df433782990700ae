"""``batch``/``abatch`` that hand all inputs to one call, so their images share one guard batch.

LangChain's default ``batch`` runs ``invoke`` per input in a thread pool: one encoder forward
per input. Our Runnables override it to run ``_batch`` / ``_abatch`` once over every input,
with tracing and callbacks from ``_batch_with_config``.
"""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig

__all__ = ["OneBatchRunnable"]


class OneBatchRunnable(Runnable[Any, Any]):
    """Mixin: subclasses implement ``_batch(inputs, run_managers, configs)`` and ``_abatch``."""

    def batch(self, inputs: list[Any], config: RunnableConfig | list[RunnableConfig] | None = None,
              *, return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        if not inputs:
            return []
        return self._batch_with_config(self._batch, inputs, config,  # type: ignore[attr-defined]
                                       return_exceptions=return_exceptions, **kwargs)

    async def abatch(self, inputs: list[Any],
                     config: RunnableConfig | list[RunnableConfig] | None = None,
                     *, return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        if not inputs:
            return []
        return await self._abatch_with_config(
            self._abatch, inputs, config,  # type: ignore[attr-defined]
            return_exceptions=return_exceptions, **kwargs)
