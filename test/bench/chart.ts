// The bench table as a chart (`npm run bench -- --svg docs/bench.svg`): one bar pair per figure,
// spoke's p50 (or RSS) next to its floor or peer from the same run, each pair on its own scale (the
// figures span microseconds to hundreds of milliseconds). Plain SVG written by hand.

import { fmt } from './stats.js';
import type { Row } from './bench.js';

const W = 1000;
const LABEL_W = 380;
const BAR_MAX = W - LABEL_W - 200;
const BAR_H = 14;
const PAIR_H = 2 * BAR_H + 22;
const TOP = 56;

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const short = (s: string, n: number) => (s.length <= n ? s : `${s.slice(0, n - 1)}…`);

export function chartSvg(rows: Row[], caption: string): string {
  const pairs = rows.filter((r) => r.chart !== undefined);
  const h = TOP + pairs.length * PAIR_H + 30;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${h}" viewBox="0 0 ${W} ${h}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${h}" fill="#fff"/>`,
    `<text x="10" y="20" font-size="15" font-weight="bold">spoke next to its floor or peer (p50, same run; shorter is better)</text>`,
    `<text x="10" y="40" fill="#555">${esc(caption)}</text>`,
  ];
  pairs.forEach((r, i) => {
    const c = r.chart!;
    const y = TOP + i * PAIR_H;
    const scale = BAR_MAX / Math.max(c.spoke, c.peer, 1e-9);
    const met = r.met === null ? '' : r.met ? ' ✓' : r.belowFloor === undefined ? ' ✗' : ' ✗ below floor';
    out.push(`<text x="10" y="${y + BAR_H}">${esc(short(r.case, 58))}</text>`);
    out.push(`<text x="10" y="${y + 2 * BAR_H + 4}" fill="#555">target ${esc(short(r.target, 44))}${met}</text>`);
    const bar = (dy: number, v: number, fill: string, name: string) => {
      const w = Math.max(1, v * scale);
      out.push(`<rect x="${LABEL_W}" y="${y + dy}" width="${w.toFixed(1)}" height="${BAR_H}" fill="${fill}"/>`);
      const value = c.unit === 'MiB' ? `${v.toFixed(1)} MiB` : fmt(v);
      out.push(`<text x="${(LABEL_W + w + 6).toFixed(1)}" y="${y + dy + BAR_H - 3}">${esc(`${value} ${name}`)}</text>`);
    };
    bar(2, c.spoke, '#2f6fb0', 'spoke');
    bar(BAR_H + 6, c.peer, '#9a9a9a', short(c.peerLabel, 30));
  });
  out.push(`<text x="10" y="${h - 10}" fill="#555">blue: spoke; grey: floor or peer measured interleaved in the same run (docs/benchmarks.md has p99s).</text>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
