/**
 * A throw-away certificate authority for the TLS tests, made with openssl(1) (EC P-256 keys: quick to make):
 * - `ca.pem`: the CA the tests trust;
 * - `server.pem`/`server.key`: signed by it, for IP 127.0.0.1 and DNS localhost;
 * - `client.pem`/`client.key`: signed by it, for client authentication;
 * - `other.pem`/`other.key`: a self-signed certificate nobody trusts (an impostor's, as server or client).
 * The PEM texts are returned; the files stay in `dir` (for child processes) until `remove()`.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { runtime } from "../../runtimes/detect.ts";

export interface TestCa {
  dir: string;
  ca: string;
  cert: string;
  key: string;
  clientCert: string;
  clientKey: string;
  otherCert: string;
  otherKey: string;
  remove(): Promise<void>;
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

/** Makes the CA and certificates in a fresh temporary directory. */
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
  } catch (e) {
    await rt.removeDir(dir);
    throw e;
  }
  return { ...readTestCa(dir), remove: () => rt.removeDir(dir) };
}

/** The PEM texts of a CA made by {@linkcode makeTestCa} (in a child process, from the directory it was given). */
export function readTestCa(dir: string): Omit<TestCa, "remove"> {
  const r = (f: string) => readFileSync(`${dir}/${f}`, "utf8");
  return {
    dir,
    ca: r("ca.pem"),
    cert: r("server.pem"),
    key: r("server.key"),
    clientCert: r("client.pem"),
    clientKey: r("client.key"),
    otherCert: r("other.pem"),
    otherKey: r("other.key"),
  };
}
