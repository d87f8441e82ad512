"""OpenTelemetry spans for a run and for each request, where the `otel` extra is installed
(`pip install "promptclf[otel]"`); without it every call here does nothing.

Spans follow the GenAI semantic conventions where they name a thing (`gen_ai.request.model`,
`gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`); promptclf's own counts are under `promptclf.*`. They
go to whatever tracer provider the application configured (an exporter to Jaeger, an OTLP collector, ...);
promptclf configures none. No span holds a text, a key or a URL's credentials."""

from __future__ import annotations

import contextlib

try:
    from opentelemetry import trace
except ImportError:  # the extra is not installed: spans are no-ops
    trace = None

TRACER = "promptclf"


@contextlib.contextmanager
def span(name: str, parent=None, **attributes):
    """A span named `name`, a child of `parent` (a span from `start`) where given, with these attributes (None
    values left out); yields it, or None without the extra. An exception in the block is recorded on it."""
    if trace is None:
        yield None
        return
    context = trace.set_span_in_context(parent) if parent is not None else None
    with trace.get_tracer(TRACER).start_as_current_span(name, context=context) as current:
        set_attributes(current, **attributes)
        yield current


def start(name: str, **attributes):
    """A span that is not made current (a run's, which lasts across a generator's yields): end it with `end`."""
    if trace is None:
        return None
    started = trace.get_tracer(TRACER).start_span(name)
    set_attributes(started, **attributes)
    return started


def end(started, **attributes) -> None:
    if started is not None:
        set_attributes(started, **attributes)
        started.end()


def set_attributes(current, **attributes) -> None:
    """Attributes on a span from `span` (a no-op on None). Keyword names use `__` for the dots of a name."""
    if current is None:
        return
    for key, value in attributes.items():
        if value is not None:
            current.set_attribute(key.replace("__", "."), value)
