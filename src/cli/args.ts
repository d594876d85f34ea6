// SPDX-License-Identifier: GPL-2.0-only
// Reading a subcommand's options: every malformed one becomes a usage error naming it.

export class ArgReader {
  private i = -1;

  constructor(
    private readonly cmd: string,
    private readonly args: readonly string[],
    private readonly usage: (message: string) => Error,
  ) {}

  /** The next argument, or undefined at the end. */
  next(): string | undefined {
    return this.args[++this.i];
  }

  /** The value of option `opt`, which must follow it. */
  value(opt: string): string {
    const v = this.args[++this.i];
    if (v === undefined) throw this.usage(`${this.cmd}: ${opt} needs a value`);
    return v;
  }

  /** The value of option `opt` as an integer in [lo, hi]. */
  int(opt: string, lo: number, hi: number): number {
    const v = this.value(opt);
    const n = Number(v);
    if (!Number.isInteger(n) || n < lo || n > hi) throw this.usage(`${this.cmd}: ${opt} takes an integer ${lo}..${hi}, got '${v}'`);
    return n;
  }

  fail(message: string): Error {
    return this.usage(`${this.cmd}: ${message}`);
  }
}
