// Placeholder until the WebGPU backend lands.
export async function hasAdapter(): Promise<boolean> {
  return false;
}
export async function describeAdapter(): Promise<{ available: boolean; detail: string }> {
  return { available: false, detail: 'not implemented yet' };
}
