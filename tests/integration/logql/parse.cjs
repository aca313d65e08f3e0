// Parses LogQL queries with @grafana/lezer-logql (the grammar Grafana's Loki
// editor uses). Input: a JSON array of strings on stdin. Output: a JSON array
// of {query, ok, errors: [{from, to, text}]}, one per query. Exit 0.
const { parser } = require("@grafana/lezer-logql");

let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  const out = JSON.parse(input).map((query) => {
    const errors = [];
    parser.parse(query).iterate({
      enter: (node) => {
        if (node.type.isError)
          errors.push({ from: node.from, to: node.to, text: query.slice(Math.max(0, node.from - 10), node.to + 10) });
      },
    });
    return { query, ok: errors.length === 0, errors };
  });
  process.stdout.write(JSON.stringify(out) + "\n");
});
