// The GPU profiler and its spans (issue 4).
export { Profiler, type ProfilerOptions, type ProfilerStartOptions, type ProfileReport, type SpanSummary, type KernelSummary, type ChromeTrace, type ChromeTraceEvent, type TimingSource } from './profiler.js';
export { withSpan, currentSpans, onSpan, type SpanListener } from './spans.js';
