// A token verifier on coreos/go-oidc (the library oauth2-proxy verifies bearer JWTs with), for
// bench/run: GET any path; the token from the `ecosire_auth` cookie, else `Authorization: Bearer`;
// RS256 signature against the provider's JWKS (fetched and cached by go-oidc's remote key set),
// issuer and audience (client_id) checked, expiry checked. 200 with the claims, 401 otherwise.
//
// Build offline from Debian's packages:
//   GO111MODULE=off GOPATH=/usr/share/gocode go build -o bench-go-oidc .
// Run: bench-go-oidc -listen 127.0.0.1:PORT -issuer ISSUER -jwks JWKS_URL -audience CLIENT_ID
package main

import (
	"context"
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"strings"

	oidc "github.com/coreos/go-oidc"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	issuer := flag.String("issuer", "", "expected issuer")
	jwks := flag.String("jwks", "", "JWKS URL")
	audience := flag.String("audience", "", "expected audience (client_id)")
	flag.Parse()
	if *issuer == "" || *jwks == "" || *audience == "" {
		log.Fatal("-issuer, -jwks and -audience are required")
	}
	keys := oidc.NewRemoteKeySet(context.Background(), *jwks)
	verifier := oidc.NewVerifier(*issuer, keys, &oidc.Config{
		ClientID:             *audience,
		SupportedSigningAlgs: []string{oidc.RS256},
	})
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		token := ""
		if c, err := r.Cookie("ecosire_auth"); err == nil {
			token = c.Value
		} else if h := r.Header.Get("Authorization"); strings.HasPrefix(h, "Bearer ") {
			token = h[len("Bearer "):]
		}
		if token == "" {
			http.Error(w, `{"error":"missing_token"}`, http.StatusUnauthorized)
			return
		}
		t, err := verifier.Verify(r.Context(), token)
		if err != nil {
			http.Error(w, `{"error":"invalid_token"}`, http.StatusUnauthorized)
			return
		}
		var claims map[string]interface{}
		if err := t.Claims(&claims); err != nil {
			http.Error(w, `{"error":"claims"}`, http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]interface{}{"valid": true, "claims": claims})
	})
	log.Printf("listening on %s", *listen)
	log.Fatal(http.ListenAndServe(*listen, nil))
}
