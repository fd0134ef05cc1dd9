// A command line that cannot mean anything (a missing or contradictory flag, a value out of range):
// exit code 2, as commander's own usage errors, never 1 (which means bad input data or a failed
// check). A ValueError, so code that catches FusedAttnError still catches it.
import { ValueError } from '../core/errors.js';

export class UsageError extends ValueError {}
