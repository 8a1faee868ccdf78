// @tus/server + @tus/file-store on 127.0.0.1 for bench/run.  usage: node server.mjs PORT DIRECTORY
import http from 'node:http';
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';

const [port, directory] = process.argv.slice(2);
const tus = new Server({ path: '/files', datastore: new FileStore({ directory }) });
const server = http.createServer((req, res) => tus.handle(req, res));
server.keepAliveTimeout = 75_000;
server.listen(Number(port), '127.0.0.1', () => console.log(`tus-node listening on 127.0.0.1:${port}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
