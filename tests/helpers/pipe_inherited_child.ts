/** Calls pipe.inherited() without fds 3 and 4: exits 7 on the expected UnsupportedError. */
import { pipe } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";

const rt = await runtime();
const code = await pipe.inherited().then(() => 1, (e: Error) => (e.name === "UnsupportedError" ? 7 : 2));
rt.exit(code);
