// A parser for the small subset of Python literals a .npy header uses: dicts with string keys,
// tuples, lists, strings, integers (with Python 2's optional 'L' suffix), True, False and None.
// Written as a tiny recursive-descent parser rather than regexes over the header, so that
// structured dtypes (a list of tuples in 'descr') parse too and get a clear "unsupported" error.

export type PyValue = string | number | boolean | null | PyValue[] | Map<string, PyValue>;

export function parsePythonLiteral(text: string): PyValue {
  const parser = new Parser(text);
  const value = parser.value();
  parser.skipSpace();
  if (!parser.done()) parser.fail('unexpected text after the literal');
  return value;
}

class Parser {
  private pos = 0;
  constructor(private readonly text: string) {}

  done(): boolean {
    return this.pos >= this.text.length;
  }

  fail(what: string): never {
    throw new Error(`${what} at character ${this.pos}`);
  }

  skipSpace(): void {
    while (!this.done() && /\s/.test(this.text[this.pos])) this.pos++;
  }

  value(): PyValue {
    this.skipSpace();
    const c = this.text[this.pos];
    if (c === '{') return this.dict();
    if (c === '(') return this.sequence('(', ')');
    if (c === '[') return this.sequence('[', ']');
    if (c === "'" || c === '"') return this.string();
    if (c !== undefined && /[-+0-9]/.test(c)) return this.integer();
    for (const [word, value] of [['True', true], ['False', false], ['None', null]] as const) {
      if (this.text.startsWith(word, this.pos)) {
        this.pos += word.length;
        return value;
      }
    }
    return this.fail(c === undefined ? 'unexpected end' : `unexpected ${JSON.stringify(c)}`);
  }

  private expect(c: string): void {
    this.skipSpace();
    if (this.text[this.pos] !== c) this.fail(`expected ${JSON.stringify(c)}`);
    this.pos++;
  }

  /** Consumes `close` if it comes next (after spaces). */
  private closes(close: string): boolean {
    this.skipSpace();
    if (this.text[this.pos] === close) {
      this.pos++;
      return true;
    }
    return false;
  }

  private dict(): Map<string, PyValue> {
    this.expect('{');
    const entries = new Map<string, PyValue>();
    while (!this.closes('}')) {
      const key = this.value();
      if (typeof key !== 'string') this.fail('dict keys must be strings');
      this.expect(':');
      entries.set(key, this.value());
      if (!this.closes(',')) {
        this.expect('}');
        break;
      }
    }
    return entries;
  }

  private sequence(open: string, close: string): PyValue[] {
    this.expect(open);
    const items: PyValue[] = [];
    while (!this.closes(close)) {
      items.push(this.value());
      if (!this.closes(',')) {
        this.expect(close);
        break;
      }
    }
    return items;
  }

  private string(): string {
    const quote = this.text[this.pos++];
    let out = '';
    while (true) {
      if (this.done()) this.fail('unterminated string');
      const c = this.text[this.pos++];
      if (c === quote) return out;
      if (c === '\\') {
        const next = this.text[this.pos++];
        out += next === 'n' ? '\n' : next === 't' ? '\t' : next;
      } else out += c;
    }
  }

  private integer(): number {
    const match = /^[-+]?\d+L?/.exec(this.text.slice(this.pos));
    if (!match) return this.fail('expected an integer');
    this.pos += match[0].length;
    return Number(match[0].replace('L', ''));
  }
}
