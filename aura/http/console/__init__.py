"""The console for people at ``GET /aura/console``: one static page (HTML, plain JS, CSS shipped as
package data, no build step, nothing loaded from elsewhere), the machine definition it draws, and in
dev mode only a way to mint a token (docs/SECURITY.md, "The console")."""
