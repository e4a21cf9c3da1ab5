// Glob semantics of apparmor_parser (parser_regex.c convert_aaregex_to_pcre): table and a
// differential property test against an independent RegExp translation.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compileGlob, GlobError, narrowsStarStar } from '../../../src/profiles/apparmor/index.js';
import { finishesInChild } from '../../helpers/hang.js';

describe('AppArmor globs', () => {
  const table: [string, string, boolean][] = [
    ['/etc/*', '/etc/a', true],
    ['/etc/*', '/etc/', false], // a star filling a whole component needs a byte
    ['/etc/*', '/etc/a/b', false],
    ['/etc/**', '/etc/a/b', true],
    ['/etc/**', '/etc/', false],
    ['/etc/**', '/etc', false],
    ['/etc/*.conf', '/etc/.conf', true], // not a whole component: may be empty
    ['/etc/**foo', '/etc/foo', true],
    ['/etc/*/', '/etc/a/', true],
    ['/etc/*/', '/etc//', false],
    ['/etc/a*', '/etc/a', true],
    ['/tmp/?', '/tmp/a', true],
    ['/tmp/?', '/tmp/é', false], // bytes, not characters
    ['/tmp/??', '/tmp/é', true],
    ['/tmp/?', '/tmp//', false],
    ['/x/[abc]', '/x/b', true],
    ['/x/[a-c]', '/x/d', false],
    ['/x/[^a]', '/x/b', true],
    ['/x/[^a]', '/x/a', false],
    ['/x[^a]y', '/x/y', true], // a negated class matches "/"
    ['/x/{a,b}', '/x/b', true],
    ['/x/{a,b}', '/x/c', false],
    ['/x/{a,}', '/x/', true],
    ['/x/{a,b/c}', '/x/b/c', true],
    ['/x/{a,{b,c}d}', '/x/cd', true],
    ['/etc/{a,*}', '/etc/', true], // the star follows the separator, not "/"
    ['/etc/{x/*,y}', '/etc/x/', true], // the star is followed by ",", not "/" or the end
    ['/usr/lib/**/*.so', '/usr/lib/a/b/c.so', true],
    ['/usr/lib/**/*.so', '/usr/lib/c.so', false],
    ['/a b/c', '/a b/c', true],
    ['/literal', '/literal', true],
    ['/literal', '/literal/', false],
  ];
  for (const [pattern, name, expected] of table) {
    it(`${pattern} ${expected ? 'matches' : 'does not match'} ${name}`, () => assert.equal(compileGlob(pattern).matches(name), expected));
  }

  it('reports literal prefixes and the <prefix>/** shape', () => {
    const g = compileGlob('/etc/foo/*.conf');
    assert.equal(g.isGlob, true);
    assert.equal(g.literalPrefix, '/etc/foo/');
    assert.equal(compileGlob('/etc/**').starStarOnly, true);
    assert.equal(compileGlob('/etc**').starStarOnly, false);
    assert.equal(compileGlob('/etc/*/**').starStarOnly, false);
    assert.equal(compileGlob('/etc/passwd').isGlob, false);
  });

  it('narrowing: only into a pure <prefix>/**, never when the narrow glob matches the prefix', () => {
    const wide = compileGlob('/etc/**');
    assert.equal(narrowsStarStar(wide, compileGlob('/etc/*.conf')), true);
    assert.equal(narrowsStarStar(wide, compileGlob('/etc/foo/**')), true);
    assert.equal(narrowsStarStar(wide, compileGlob('/etc/{,**}')), false);
    assert.equal(narrowsStarStar(wide, compileGlob('/et*')), false);
    assert.equal(narrowsStarStar(compileGlob('/etc/*'), compileGlob('/etc/a*')), false);
    // "/etc/**" matches no name starting "/etc//" (its first byte is not "/"): a glob that may
    // spell one is not narrower, whether by a negated class or an empty alternative.
    assert.equal(narrowsStarStar(wide, compileGlob('/etc/[^x]shadow')), false);
    assert.equal(narrowsStarStar(wide, compileGlob('/etc/{,/}shadow')), false);
    assert.equal(narrowsStarStar(wide, compileGlob('/etc/?shadow')), true);
  });

  it('refuses what apparmor_parser refuses', () => {
    for (const p of ['/a/{b', '/a/b}', '/a/{b}', '/a/[b', '/a/b]', '/a/[]', '/a/***', '/a,b', `/{${'x,'.repeat(100)}x}`]) {
      assert.throws(() => compileGlob(p), GlobError, p);
    }
  });

  it('matches without a backtracking blow-up', () => {
    // Thirty stars against 4,000 letters: a backtracking matcher tries on the order of 4000^30 splits.
    const out = finishesInChild(new URL('../../../src/profiles/apparmor/index.js', import.meta.url), `
      process.stdout.write(String(m.compileGlob('/' + '**a'.repeat(30) + 'b').matches('/' + 'a'.repeat(4000))));`);
    assert.equal(out, 'false');
  });
});

// Independent translation: pattern → RegExp over latin1 bytes, following the parser's rules.
function reference(pattern: string): RegExp {
  const s = Buffer.from(pattern, 'utf8').toString('latin1');
  let out = '';
  let last = '';
  const esc = (c: string) => '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0');
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '*') {
      const double = s[i + 1] === '*';
      const after = i + (double ? 2 : 1);
      if (last === '/' && (after === s.length || s[after] === '/')) out += '[^/\\x00]';
      out += double ? '[^\\x00]*' : '[^/\\x00]*';
      if (double) i++;
      last = '*';
    } else if (c === '?') {
      out += '[^/\\x00]';
      last = '?';
    } else if (c === '[') {
      const end = s.indexOf(']', i);
      let body = s.slice(i + 1, end);
      const neg = body.startsWith('^');
      if (neg) body = body.slice(1);
      out += `[${neg ? '^\\x00' : ''}${body.replace(/[^-]/g, esc)}]`;
      i = end;
      last = ']';
    } else if (c === '{') {
      out += '(?:';
      last = '(';
    } else if (c === ',') {
      out += '|';
      last = '|';
    } else if (c === '}') {
      out += ')';
      last = ')';
    } else {
      out += esc(c);
      last = c;
    }
  }
  return new RegExp(`^${out}$`, 's');
}

describe('AppArmor globs: differential against a RegExp translation', () => {
  const token = fc.constantFrom('a', 'b', 'é', '.', '-', '/', '*', '**', '?', '[ab]', '[^a]', '[a-c]', '{a,b}', '{a,}', '{/,x}', '{a*,b/c}');
  const pattern = fc.array(token, { minLength: 1, maxLength: 8 }).map((ts) => '/' + ts.join(''));
  const name = fc.array(fc.constantFrom('a', 'b', 'c', 'é', '.', '/', 'ab'), { maxLength: 8 }).map((ts) => '/' + ts.join(''));

  it('compileGlob agrees with the reference on every generated pattern and name', () => {
    fc.assert(
      fc.property(pattern, fc.array(name, { minLength: 1, maxLength: 10 }), (p, names) => {
        let g;
        try {
          g = compileGlob(p);
        } catch {
          return; // patterns we refuse (e.g. three stars) are not compared
        }
        const re = reference(p);
        for (const n of names) {
          const latin = Buffer.from(n, 'utf8').toString('latin1');
          assert.equal(g.matches(n), re.test(latin), `${p} vs ${n}`);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
