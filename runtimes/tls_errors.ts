/**
 * What a failed TLS handshake means, in ipckit's error classes, on both sides. The runtimes' TLS stacks (OpenSSL in
 * Node, BoringSSL in Bun, rustls behind Deno's `node:tls`) name the same failures with OpenSSL-style codes; the
 * messages below say which side refused what, and the original error stays the `cause`.
 *
 * @module
 */
import { ClosedError, PermissionError, ProtocolError, TimeoutError } from "../errors.ts";

function codeOf(e: unknown): string {
  const code = (e as { code?: unknown })?.code;
  return typeof code === "string" ? code : "";
}

function messageOf(e: unknown): string {
  return String((e as { message?: unknown })?.message ?? e).split("\n")[0]!;
}

/** A certificate verification failure (X.509 codes, and Node's host-name check). */
function isCertificateCode(code: string): boolean {
  return /CERT|SIGNATURE|ISSUER|INVALID_CA|ALTNAME|HOSTNAME_MISMATCH/.test(code) && !/ALERT/.test(code);
}

/**
 * The error a TLS client reports when its handshake fails, or when the server ends the connection with an alert
 * right after it (TLS 1.3 servers check the client's certificate after the client considers itself connected).
 * Errors that are not about TLS are returned as they are.
 */
export function tlsClientError(e: unknown, what: string, handshaking = false): unknown {
  const code = codeOf(e);
  const detail = `${code ? code + ": " : ""}${messageOf(e)}`;
  // BoringSSL (Bun) names the alert in the message, with the code EPROTO.
  const alert = `${code} ${messageOf(e)}`.toUpperCase();
  if (/ALERT_CERTIFICATE_REQUIRED|ALERT.CERTIFICATE.REQUIRED|CERTIFICATEREQUIRED/.test(alert)) {
    return new PermissionError(
      `${what}: the server requires a TLS client certificate (pass tls.cert and tls.key) (${detail})`,
      { code, cause: e },
    );
  }
  if (/ALERT_(UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_UNKNOWN|UNSUPPORTED_CERTIFICATE|ACCESS_DENIED)/.test(alert)) {
    return new PermissionError(`${what}: the server refused this client's TLS certificate (${detail})`, {
      code,
      cause: e,
    });
  }
  if (isCertificateCode(code)) {
    return new PermissionError(`${what}: the server's TLS certificate is not trusted (${detail})`, {
      code,
      cause: e,
    });
  }
  if (/^ERR_SSL|^EPROTO$|ALERT/.test(code)) {
    return new ProtocolError(`${what}: the TLS handshake failed (${detail})`, { code, cause: e });
  }
  if (handshaking && (code === "ECONNRESET" || code === "EPIPE" || /disconnected|hang up/i.test(messageOf(e)))) {
    return new ClosedError(`${what}: the server closed the connection during the TLS handshake (${detail})`, {
      code: code || "ECONNRESET",
      cause: e,
    });
  }
  return e;
}

/**
 * The error a TLS listener reports for a connection it refused during the handshake.
 *
 * @param authorizationError Why the client's certificate was not accepted, when the TLS stack said so.
 */
export function tlsServerError(e: unknown, what: string, authorizationError?: unknown, timeout?: number): Error {
  const code = codeOf(e);
  const detail = `${code ? code + ": " : ""}${messageOf(e)}`;
  if (typeof authorizationError === "string" && authorizationError !== "") {
    return new PermissionError(`${what}: the client's TLS certificate is not trusted (${authorizationError})`, {
      code: authorizationError,
      cause: e,
    });
  }
  if (/DID_NOT_RETURN_A_CERTIFICATE|NO_CERTIFICATE/i.test(`${code} ${messageOf(e)}`)) {
    return new PermissionError(`${what}: the client sent no TLS certificate, and requestCert requires one`, {
      code,
      cause: e,
    });
  }
  if (isCertificateCode(code)) {
    return new PermissionError(`${what}: the client's TLS certificate is not trusted (${detail})`, { code, cause: e });
  }
  if (/HANDSHAKE_TIMEOUT/.test(code) || /handshake timeout/i.test(messageOf(e))) {
    return new TimeoutError(
      `${what}: the TLS handshake took longer than ${timeout === undefined ? "allowed" : `${timeout} ms`}`,
      { code: "ETIMEDOUT", cause: e },
    );
  }
  if (/ALERT/.test(code)) {
    return new PermissionError(`${what}: the client refused this server's TLS certificate (${detail})`, {
      code,
      cause: e,
    });
  }
  if (code === "ECONNRESET" || code === "EPIPE" || /hang up|disconnected/i.test(messageOf(e))) {
    return new ClosedError(`${what}: the client left during the TLS handshake`, { code, cause: e });
  }
  return new ProtocolError(`${what}: the TLS handshake failed (${detail})`, { cause: e, ...(code ? { code } : {}) });
}

/** Pending TLS (and ipckit auth) handshakes one listener carries at most; more connections are closed at once. */
export const MAX_PENDING_HANDSHAKES = 128;

/** The default time a handshake may take, in milliseconds. */
export const DEFAULT_HANDSHAKE_TIMEOUT = 10_000;
