// WebGPU linear attention and Performer (written below).
import { UnsupportedError } from '../../../core/errors.js';
import type { AttentionResult } from '../../attention/backend.js';
import type { ApproxProblem } from '../problem.js';

export async function runApproxGpu(_p: ApproxProblem, _device?: GPUDevice): Promise<AttentionResult> {
  throw new UnsupportedError('options.backend', 'approximate attention on WebGPU: not yet');
}
