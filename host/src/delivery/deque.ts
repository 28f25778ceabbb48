/** An array-backed FIFO with O(1) amortized shift, for the delivery hot path. */
export class Deque<T> {
  private items: T[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  /** The item at `index` from the front, or undefined. */
  at(index: number): T | undefined {
    return this.items[this.head + index];
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head]!;
    (this.items as unknown[])[this.head] = undefined;
    this.head++;
    if (this.head > 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /** Removes and returns the item at `index` from the front (O(n)). */
  removeAt(index: number): T | undefined {
    const [item] = this.items.splice(this.head + index, 1);
    return item;
  }

  *[Symbol.iterator](): Iterator<T> {
    for (let i = this.head; i < this.items.length; i++) yield this.items[i]!;
  }

  clear(): T[] {
    const rest = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return rest;
  }
}
