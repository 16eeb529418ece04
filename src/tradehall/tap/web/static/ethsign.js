/*
 * ethsign.js - the minimum of Ethereum signing the Tap page needs, with no dependencies:
 * Keccak-256 (the original Keccak padding 0x01, as Ethereum uses, not SHA3-256's 0x06),
 * SHA-256 and HMAC-SHA-256 (for RFC 6979 nonces), secp256k1 arithmetic on BigInt, and
 * EIP-191 personal_sign.
 *
 * Signatures are deterministic (RFC 6979 with HMAC-SHA-256) and low-s normalised, so for the same
 * key and text they are byte-identical to eth-account's `sign_message(encode_defunct(text=...))`;
 * the browser tests check exactly that. The result is r || s || v with v = 27 + recovery id.
 *
 * Scope: signing a short text a few times per session. BigInt arithmetic is not constant-time, so
 * this is meant for the development wallet only (a throwaway key kept in localStorage); real funds
 * belong in an injected wallet (window.ethereum).
 */
(function (root) {
  "use strict";

  // ------------------------------------------------------------------ bytes

  function utf8(text) {
    return new TextEncoder().encode(text);
  }

  function concat(...parts) {
    let size = 0;
    for (const p of parts) size += p.length;
    const out = new Uint8Array(size);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  function toHex(bytes) {
    let s = "";
    for (const b of bytes) s += b.toString(16).padStart(2, "0");
    return s;
  }

  function fromHex(hex) {
    const h = hex.startsWith("0x") ? hex.slice(2) : hex;
    if (h.length % 2 !== 0 || /[^0-9a-fA-F]/.test(h)) throw new Error("bad hex");
    const out = new Uint8Array(h.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(h.substr(i * 2, 2), 16);
    return out;
  }

  function bytesToBig(bytes) {
    return bytes.length ? BigInt("0x" + toHex(bytes)) : 0n;
  }

  function bigToBytes(value, size) {
    const hex = value.toString(16).padStart(size * 2, "0");
    if (hex.length > size * 2) throw new Error("number too large");
    return fromHex(hex);
  }

  // ------------------------------------------------------------------ Keccak-256

  const M64 = (1n << 64n) - 1n;
  const RC = [
    0x0000000000000001n, 0x0000000000008082n, 0x800000000000808an, 0x8000000080008000n,
    0x000000000000808bn, 0x0000000080000001n, 0x8000000080008081n, 0x8000000000008009n,
    0x000000000000008an, 0x0000000000000088n, 0x0000000080008009n, 0x000000008000000an,
    0x000000008000808bn, 0x800000000000008bn, 0x8000000000008089n, 0x8000000000008003n,
    0x8000000000008002n, 0x8000000000000080n, 0x000000000000800an, 0x800000008000000an,
    0x8000000080008081n, 0x8000000000008080n, 0x0000000080000001n, 0x8000000080008008n,
  ];
  // rho rotation amounts and pi lane order, walked along the pi permutation starting at lane 1
  const ROT = [1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44];
  const PI = [10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1];

  function rotl(x, n) {
    const b = BigInt(n);
    return ((x << b) | (x >> (64n - b))) & M64;
  }

  function keccakF(st) {
    const bc = new Array(5);
    for (let round = 0; round < 24; round++) {
      for (let i = 0; i < 5; i++) bc[i] = st[i] ^ st[i + 5] ^ st[i + 10] ^ st[i + 15] ^ st[i + 20];
      for (let i = 0; i < 5; i++) {
        const t = bc[(i + 4) % 5] ^ rotl(bc[(i + 1) % 5], 1);
        for (let j = 0; j < 25; j += 5) st[j + i] ^= t;
      }
      let t = st[1];
      for (let i = 0; i < 24; i++) {
        const j = PI[i];
        const saved = st[j];
        st[j] = rotl(t, ROT[i]);
        t = saved;
      }
      for (let j = 0; j < 25; j += 5) {
        for (let i = 0; i < 5; i++) bc[i] = st[j + i];
        for (let i = 0; i < 5; i++) st[j + i] ^= (~bc[(i + 1) % 5] & M64) & bc[(i + 2) % 5];
      }
      st[0] ^= RC[round];
    }
  }

  function keccak256(data) {
    const rate = 136;
    const padded = new Uint8Array(Math.floor(data.length / rate) * rate + rate);
    padded.set(data);
    padded[data.length] ^= 0x01;
    padded[padded.length - 1] ^= 0x80;
    const st = new Array(25).fill(0n);
    for (let off = 0; off < padded.length; off += rate) {
      for (let lane = 0; lane < rate / 8; lane++) {
        let v = 0n;
        for (let b = 7; b >= 0; b--) v = (v << 8n) | BigInt(padded[off + lane * 8 + b]);
        st[lane] ^= v;
      }
      keccakF(st);
    }
    const out = new Uint8Array(32);
    for (let lane = 0; lane < 4; lane++) {
      let v = st[lane];
      for (let b = 0; b < 8; b++) {
        out[lane * 8 + b] = Number(v & 0xffn);
        v >>= 8n;
      }
    }
    return out;
  }

  // ------------------------------------------------------------------ SHA-256 and HMAC

  const K256 = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);

  function sha256(data) {
    const bitLen = data.length * 8;
    const total = Math.ceil((data.length + 9) / 64) * 64;
    const msg = new Uint8Array(total);
    msg.set(data);
    msg[data.length] = 0x80;
    const view = new DataView(msg.buffer);
    view.setUint32(total - 8, Math.floor(bitLen / 2 ** 32));
    view.setUint32(total - 4, bitLen >>> 0);
    const h = new Uint32Array([
      0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ]);
    const w = new Uint32Array(64);
    const ror = (x, n) => (x >>> n) | (x << (32 - n));
    for (let off = 0; off < total; off += 64) {
      for (let i = 0; i < 16; i++) w[i] = view.getUint32(off + i * 4);
      for (let i = 16; i < 64; i++) {
        const s0 = ror(w[i - 15], 7) ^ ror(w[i - 15], 18) ^ (w[i - 15] >>> 3);
        const s1 = ror(w[i - 2], 17) ^ ror(w[i - 2], 19) ^ (w[i - 2] >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
      }
      let [a, b, c, d, e, f, g, hh] = h;
      for (let i = 0; i < 64; i++) {
        const t1 = (hh + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i]) >>> 0;
        const t2 = ((ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
        hh = g;
        g = f;
        f = e;
        e = (d + t1) >>> 0;
        d = c;
        c = b;
        b = a;
        a = (t1 + t2) >>> 0;
      }
      h[0] += a; h[1] += b; h[2] += c; h[3] += d;
      h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
    }
    const out = new Uint8Array(32);
    const outView = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) outView.setUint32(i * 4, h[i]);
    return out;
  }

  function hmacSha256(key, data) {
    let k = key.length > 64 ? sha256(key) : key;
    const block = new Uint8Array(64);
    block.set(k);
    const ipad = block.map((b) => b ^ 0x36);
    const opad = block.map((b) => b ^ 0x5c);
    return sha256(concat(opad, sha256(concat(ipad, data))));
  }

  // ------------------------------------------------------------------ secp256k1

  const P = 0xfffffffffffffffffffffffffffffffffffffffffffffffffffffffefffffc2fn;
  const N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
  const G = {
    x: 0x79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798n,
    y: 0x483ada7726a3c4655da4fbfc0e1108a8fd17b448a68554199c47d08ffb10d4b8n,
  };

  function mod(a, m) {
    const r = a % m;
    return r >= 0n ? r : r + m;
  }

  function inverse(a, m) {
    let [oldR, r] = [mod(a, m), m];
    let [oldS, s] = [1n, 0n];
    while (r !== 0n) {
      const q = oldR / r;
      [oldR, r] = [r, oldR - q * r];
      [oldS, s] = [s, oldS - q * s];
    }
    if (oldR !== 1n) throw new Error("not invertible");
    return mod(oldS, m);
  }

  // Jacobian coordinates (X, Y, Z) with x = X/Z^2, y = Y/Z^3; Z = 0 is the point at infinity.
  function jDouble(p) {
    if (p.z === 0n || p.y === 0n) return { x: 0n, y: 1n, z: 0n };
    const ysq = mod(p.y * p.y, P);
    const s = mod(4n * p.x * ysq, P);
    const m = mod(3n * p.x * p.x, P);
    const x = mod(m * m - 2n * s, P);
    const y = mod(m * (s - x) - 8n * ysq * ysq, P);
    const z = mod(2n * p.y * p.z, P);
    return { x, y, z };
  }

  function jAdd(p, q) {
    if (p.z === 0n) return q;
    if (q.z === 0n) return p;
    const pz2 = mod(p.z * p.z, P);
    const qz2 = mod(q.z * q.z, P);
    const u1 = mod(p.x * qz2, P);
    const u2 = mod(q.x * pz2, P);
    const s1 = mod(p.y * qz2 * q.z, P);
    const s2 = mod(q.y * pz2 * p.z, P);
    if (u1 === u2) return s1 === s2 ? jDouble(p) : { x: 0n, y: 1n, z: 0n };
    const h = mod(u2 - u1, P);
    const r = mod(s2 - s1, P);
    const h2 = mod(h * h, P);
    const h3 = mod(h * h2, P);
    const u1h2 = mod(u1 * h2, P);
    const x = mod(r * r - h3 - 2n * u1h2, P);
    const y = mod(r * (u1h2 - x) - s1 * h3, P);
    const z = mod(h * p.z * q.z, P);
    return { x, y, z };
  }

  function multiply(point, scalar) {
    let acc = { x: 0n, y: 1n, z: 0n };
    let addend = { x: point.x, y: point.y, z: 1n };
    let k = scalar;
    while (k > 0n) {
      if (k & 1n) acc = jAdd(acc, addend);
      addend = jDouble(addend);
      k >>= 1n;
    }
    if (acc.z === 0n) throw new Error("point at infinity");
    const zi = inverse(acc.z, P);
    const zi2 = mod(zi * zi, P);
    return { x: mod(acc.x * zi2, P), y: mod(acc.y * zi2 * zi, P) };
  }

  function validPrivateKey(bytes) {
    if (bytes.length !== 32) return false;
    const d = bytesToBig(bytes);
    return d > 0n && d < N;
  }

  function publicKey(privateKey) {
    if (!validPrivateKey(privateKey)) throw new Error("invalid private key");
    return multiply(G, bytesToBig(privateKey));
  }

  function checksumAddress(lowerHex40) {
    const hash = toHex(keccak256(utf8(lowerHex40)));
    let out = "0x";
    for (let i = 0; i < 40; i++) {
      const c = lowerHex40[i];
      out += parseInt(hash[i], 16) >= 8 ? c.toUpperCase() : c;
    }
    return out;
  }

  function address(privateKey) {
    const pub = publicKey(privateKey);
    const digest = keccak256(concat(bigToBytes(pub.x, 32), bigToBytes(pub.y, 32)));
    return checksumAddress(toHex(digest.slice(12)));
  }

  // RFC 6979 section 3.2 with HMAC-SHA-256; qlen = hlen = 256 bits, so bits2int is the identity.
  function* rfc6979(privateKey, digest) {
    const h1 = bigToBytes(mod(bytesToBig(digest), N), 32);
    let v = new Uint8Array(32).fill(1);
    let k = new Uint8Array(32);
    k = hmacSha256(k, concat(v, [0], privateKey, h1));
    v = hmacSha256(k, v);
    k = hmacSha256(k, concat(v, [1], privateKey, h1));
    v = hmacSha256(k, v);
    for (;;) {
      v = hmacSha256(k, v);
      const candidate = bytesToBig(v);
      if (candidate > 0n && candidate < N) yield candidate;
      k = hmacSha256(k, concat(v, [0]));
      v = hmacSha256(k, v);
    }
  }

  function signDigest(privateKey, digest) {
    if (!validPrivateKey(privateKey)) throw new Error("invalid private key");
    const d = bytesToBig(privateKey);
    const z = bytesToBig(digest);
    for (const k of rfc6979(privateKey, digest)) {
      const R = multiply(G, k);
      const r = mod(R.x, N);
      if (r === 0n) continue;
      let s = mod(inverse(k, N) * (z + r * d), N);
      if (s === 0n) continue;
      let recovery = Number(R.y & 1n) | (R.x >= N ? 2 : 0);
      if (s > N / 2n) {
        s = N - s;
        recovery ^= 1;
      }
      return concat(bigToBytes(r, 32), bigToBytes(s, 32), [27 + recovery]);
    }
    throw new Error("unreachable");
  }

  // EIP-191 version 0x45: keccak256("\x19Ethereum Signed Message:\n" + byte length + message)
  function personalMessageDigest(text) {
    const body = utf8(text);
    return keccak256(concat(utf8("\x19Ethereum Signed Message:\n" + body.length), body));
  }

  function personalSign(privateKey, text) {
    return "0x" + toHex(signDigest(privateKey, personalMessageDigest(text)));
  }

  function generatePrivateKey() {
    for (;;) {
      const bytes = crypto.getRandomValues(new Uint8Array(32));
      if (validPrivateKey(bytes)) return bytes;
    }
  }

  root.EthSign = Object.freeze({
    address,
    checksumAddress,
    fromHex,
    generatePrivateKey,
    hmacSha256,
    keccak256,
    personalMessageDigest,
    personalSign,
    sha256,
    toHex,
    utf8,
    validPrivateKey,
  });
})(typeof window !== "undefined" ? window : globalThis);
