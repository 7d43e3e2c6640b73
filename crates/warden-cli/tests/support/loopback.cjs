// Preloaded (node --require) into reference servers that listen on every interface
// (server-everything's `app.listen(PORT)`): binds them to 127.0.0.1 instead.
const http = require("node:http");
const listen = http.Server.prototype.listen;
http.Server.prototype.listen = function (port, ...rest) {
  if ((typeof port === "number" || typeof port === "string") && typeof rest[0] !== "string") {
    return listen.call(this, port, "127.0.0.1", ...rest);
  }
  return listen.call(this, port, ...rest);
};
