// probe-js: reports what the sandbox lets a JavaScript plugin see. For
// ferry's sandbox tests only; never load it in a real pipeline.
//
// Config `mode`: "observe" fails every event with a JSON report (the clock,
// whether random numbers work); "loop" never returns (the
// deadline must cut it); "hoard" allocates without bound (the memory cap
// must cut it).

let mode = "observe";

export const guest = {
  init(config) {
    mode = JSON.parse(config).mode ?? "observe";
    if (!["observe", "loop", "hoard"].includes(mode)) throw `unknown mode ${mode}`;
  },

  process(events) {
    if (mode === "loop") {
      for (;;) {}
    }
    if (mode === "hoard") {
      const hoard = [];
      for (;;) hoard.push(new Uint8Array(1 << 20).fill(1));
    }
    const random = new Uint8Array(16);
    crypto.getRandomValues(random);
    const report = JSON.stringify({
      random: Math.random() >= 0 && Math.random() < 1,
      time: Date.now(),
    });
    // One event per line: count the line breaks.
    const count = events.reduce((n, byte) => n + (byte === 10 ? 1 : 0), 0);
    const verdicts = Array.from({ length: count }, () => ({ tag: "fail", val: report }));
    return { verdicts, lines: new Uint8Array(0), routes: [] };
  },
};
