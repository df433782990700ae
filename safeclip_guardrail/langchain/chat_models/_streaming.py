"""Token streaming and stop sequences.

``TextIteratorStreamer`` emits text only at spaces and newlines, so an answer without a
space arrives as one chunk. :class:`TokenStreamer` emits after every token whose decoded
text is stable (not ending inside a multi-byte character), which keeps the invariant that
matters: the chunks concatenate to exactly the decoded answer. :class:`StopTrimmer` holds
back text that could be the start of a stop sequence and cuts the answer at the first one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import TextIteratorStreamer

__all__ = ["StopTrimmer", "TokenStreamer", "cut_at_stop"]


class TokenStreamer(TextIteratorStreamer):
    """A ``TextIteratorStreamer`` that yields after each stable token; counts the tokens."""

    def __init__(self, tokenizer: Any, *, timeout: float | None = None,
                 **decode_kwargs: Any) -> None:
        super().__init__(tokenizer, skip_prompt=True, timeout=timeout, **decode_kwargs)
        self.generated_tokens = 0

    def put(self, value: Any) -> None:
        if len(value.shape) > 1:
            value = value[0]
        if self.skip_prompt and self.next_tokens_are_prompt:
            self.next_tokens_are_prompt = False
            return
        tokens = value.tolist()
        self.generated_tokens += len(tokens)
        self.token_cache.extend(tokens)
        text = str(self.tokenizer.decode(self.token_cache, **self.decode_kwargs))
        if text.endswith("\ufffd"):  # inside a multi-byte character: wait for the rest
            return
        printable = text[self.print_len:]
        self.print_len = len(text)
        if printable:
            self.on_finalized_text(printable)


def cut_at_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    """``text`` up to the first stop sequence (excluded) and whether one was found."""
    if not stop:
        return text, False
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[:min(cuts)], True) if cuts else (text, False)


class StopTrimmer:
    """Streams text through, holding back what could still become a stop sequence."""

    def __init__(self, stop: Sequence[str] | None) -> None:
        self.stop = [s for s in (stop or []) if s]
        self._buffer = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """The part of ``text`` that is safe to emit now ("" once a stop sequence is seen)."""
        if self.stopped:
            return ""
        if not self.stop:
            return text
        self._buffer += text
        head, found = cut_at_stop(self._buffer, self.stop)
        if found:
            self.stopped = True
            self._buffer = ""
            return head
        hold = 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(self._buffer)), 0, -1):
                if self._buffer.endswith(s[:k]):
                    hold = max(hold, k)
                    break
        out = self._buffer[:len(self._buffer) - hold]
        self._buffer = self._buffer[len(self._buffer) - hold:]
        return out

    def flush(self) -> str:
        out, self._buffer = ("" if self.stopped else self._buffer), ""
        return out
