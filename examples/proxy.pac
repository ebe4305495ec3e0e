// Proxy auto-config (PAC) for tunnel: <device-id>.tunnel names go to the local
// socksd (SOCKS5 on 127.0.0.1:1080), everything else goes direct.
//
// You usually do not need this file: socksd serves the same script itself at
//
//     http://127.0.0.1:1080/proxy.pac
//
// (the SOCKS port also answers plain HTTP GETs for /proxy.pac and /wpad.dat),
// and that copy always names the address socksd really listens on. Use this
// one when you want to edit it, e.g. for another port, or to serve it from
// your own web server. See browser.md for where to enter the URL.
//
// Why SOCKS5 and not SOCKS: in a PAC file, "SOCKS host:port" means SOCKS v4 to
// Chrome and Firefox, which resolves the name locally -- and a .tunnel name
// has no DNS record. With "SOCKS5" both browsers send the name to socksd
// unresolved, which is what socksd needs (it never resolves names either).
//
// There is deliberately no "; DIRECT" fallback: a .tunnel name cannot be
// reached without socksd, and trying DNS for it would only leak the name.

function FindProxyForURL(url, host) {
  host = host.toLowerCase();
  if (host == "tunnel" || dnsDomainIs(host, ".tunnel")) {
    return "SOCKS5 127.0.0.1:1080";
    // Without a local socksd, a public gateway reaches devices' -public
    // ports only; it sees your traffic (plain HTTP in the clear), so use one
    // you trust:
    // return "SOCKS5 127.0.0.1:1080; SOCKS5 gw.example:1080";
  }
  return "DIRECT";
}
