// The task of bench/pool.ts for tinypool and piscina (plain JavaScript: their workers load it themselves).
export default (n) => n * n;
