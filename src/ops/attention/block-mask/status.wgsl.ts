// WGSL reader of a block grid's status table (grid.ts statusTable, appended to the mods data and
// bound as mod_data): the tile's status in O(1), for kernels that cannot walk a query block's list
// of key blocks (the backward's kv kernel walks query blocks per key block). Tiles must lie inside
// one block of the grid (the host picks blocks that are multiples of the kernels' tiles).
export const BLOCK_STATUS_WGSL = `// status of the tile holding query row i0 / key j0 of (b, h): 0 empty, 1 partial, 2 full
fn block_status(b: u32, h: u32, i0: u32, j0: u32) -> u32 {
  let t = mod_data[0];
  let qt = mod_data[t + 2u];
  let kt = mod_data[t + 3u];
  let row = (select(b, 0u, mod_data[t] == 1u) * mod_data[t + 1u] + select(h, 0u, mod_data[t + 1u] == 1u)) * qt + min(i0 / mod_data[t + 4u], qt - 1u);
  let n = row * kt + min(j0 / mod_data[t + 5u], kt - 1u);
  return (mod_data[t + 8u + n / 4u] >> (8u * (n % 4u))) & 0xffu;
}`;
