// A plain @tus/server with the file store for the chunkd client tests.
// Usage: node server.mjs PORT DIR   (prints "listening PORT" once it accepts connections)
import http from "node:http";
import { Server } from "@tus/server";
import { FileStore } from "@tus/file-store";

const [port, dir] = process.argv.slice(2);
const tus = new Server({ path: "/files", datastore: new FileStore({ directory: dir }) });
const server = http.createServer((req, res) => tus.handle(req, res));
server.listen(Number(port), "127.0.0.1", () => console.log(`listening ${port}`));
