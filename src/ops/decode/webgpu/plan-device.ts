// What a decode plan needs to know about the device beyond its limits, read from a runtime: the
// same answer for the op, the block's decode path and the runner.
import { type AdapterDescription, isSoftwareAdapter } from '../../../engines/webgpu/device.js';
import type { PlanDevice } from './plan.js';
import { sgMatrixAdapterUnsupported } from '../../attention/webgpu/tiers/sgmatrix.js';

export function decodePlanDevice(runtime: { adapter: AdapterDescription; features: ReadonlySet<string> }): PlanDevice {
  return {
    software: isSoftwareAdapter(runtime.adapter),
    // key lanes summed by subgroup shuffles need the feature on the device, not only the adapter
    subgroupMatrix: sgMatrixAdapterUnsupported(runtime as never) === undefined,
    subgroupSize: runtime.features.has('subgroups') ? runtime.adapter.subgroupMinSize ?? 0 : 0,
  };
}
