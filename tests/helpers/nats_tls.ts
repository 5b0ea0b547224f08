/** A throw-away CA and a server certificate for 127.0.0.1, made with openssl(1), for the NATS TLS test. */
import { execFileSync } from "node:child_process";
import { runtime } from "../../runtimes/detect.ts";

export async function tlsFiles(): Promise<{ ca: string; cert: string; key: string; remove(): Promise<void> }> {
  const rt = await runtime();
  const dir = await rt.makeTempDir("ipckit-tls-");
  const run = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  try {
    run(
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=ipckit test CA",
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
    );
    run(
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-subj",
      "/CN=127.0.0.1",
      "-keyout",
      "server.key",
      "-out",
      "server.csr",
    );
    const ext = `${dir}/ext.cnf`;
    (await import("node:fs")).writeFileSync(ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
    run(
      "x509",
      "-req",
      "-in",
      "server.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-days",
      "1",
      "-extfile",
      ext,
      "-out",
      "server.pem",
    );
  } catch (e) {
    await rt.removeDir(dir);
    throw e;
  }
  return { ca: `${dir}/ca.pem`, cert: `${dir}/server.pem`, key: `${dir}/server.key`, remove: () => rt.removeDir(dir) };
}
