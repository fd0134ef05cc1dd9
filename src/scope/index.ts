// Record-and-replay scopes (issue 4).
export { Scope, scope, getScope, type ScopeOptions, type ScopeCallOptions, type ScopeRun, type ScopeStats } from './scope.js';
