// The references a pipeline has parsed, remembered: a node's kubelet asks for the same few at
// every container start, and the parse is a pure function of the text, so the memory only saves
// the parse (part of every cached pull). Only references that parse are remembered.

import { formatReference, parseReference, type Reference } from '../core/reference.js';

/** References remembered; past it the memory starts afresh. */
const MAX_PARSED_REFERENCES = 1024;

export class ParsedReferences {
  /** A reference as given → its parse (frozen) and canonical form. */
  private readonly parsed = new Map<string, { ref: Reference; canonical: string }>();

  /** parseReference (throwing as it does) and formatReference of `reference`. */
  parse(reference: string): { ref: Reference; canonical: string } {
    let hit = this.parsed.get(reference);
    if (hit === undefined) {
      const ref = parseReference(reference);
      hit = { ref, canonical: formatReference(ref) };
      if (this.parsed.size >= MAX_PARSED_REFERENCES) this.parsed.clear();
      this.parsed.set(reference, hit);
    }
    return hit;
  }
}
