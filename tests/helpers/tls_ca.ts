/**
 * A throw-away certificate authority for the TLS tests, made with openssl(1) (EC P-256 keys: quick to make):
 * - `ca`: the CA the tests trust;
 * - `cert`/`key`: signed by it, for IP 127.0.0.1 and DNS localhost (a server's);
 * - `clientCert`/`clientKey`: signed by it, for client authentication;
 * - `otherCert`/`otherKey`: a self-signed certificate nobody trusts (an impostor's, as server or client).
 * Only the PEM texts are kept: the files are removed at once, so nothing is left whatever happens to the test run
 * (child processes get the texts they need in their arguments or over their pipe).
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { runtime } from "../../runtimes/detect.ts";

export interface TestCa {
  ca: string;
  cert: string;
  key: string;
  clientCert: string;
  clientKey: string;
  otherCert: string;
  otherKey: string;
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

/** Makes the CA and certificates (in a temporary directory, removed before this returns). */
export async function makeTestCa(): Promise<TestCa> {
  const rt = await runtime();
  const dir = await rt.makeTempDir("ipckit-tls-");
  const run = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  try {
    run("req", "-x509", ...EC, "-days", "2", "-subj", "/CN=ipckit test CA", "-keyout", "ca.key", "-out", "ca.pem");
    writeFileSync(`${dir}/server.cnf`, "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
    writeFileSync(`${dir}/client.cnf`, "extendedKeyUsage=clientAuth\n");
    for (const [name, cn] of [["server", "127.0.0.1"], ["client", "ipckit test client"]] as const) {
      run("req", ...EC, "-subj", `/CN=${cn}`, "-keyout", `${name}.key`, "-out", `${name}.csr`);
      run(
        "x509",
        "-req",
        "-in",
        `${name}.csr`,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        `${name}.cnf`,
        "-out",
        `${name}.pem`,
      );
    }
    run(
      "req",
      "-x509",
      ...EC,
      "-days",
      "2",
      "-subj",
      "/CN=127.0.0.1",
      "-addext",
      "subjectAltName=IP:127.0.0.1,DNS:localhost",
      "-keyout",
      "other.key",
      "-out",
      "other.pem",
    );
    const r = (f: string) => readFileSync(`${dir}/${f}`, "utf8");
    return {
      ca: r("ca.pem"),
      cert: r("server.pem"),
      key: r("server.key"),
      clientCert: r("client.pem"),
      clientKey: r("client.key"),
      otherCert: r("other.pem"),
      otherKey: r("other.key"),
    };
  } finally {
    await rt.removeDir(dir);
  }
}
