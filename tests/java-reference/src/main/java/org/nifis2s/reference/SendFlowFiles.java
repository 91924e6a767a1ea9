package org.nifis2s.reference;

import java.io.FileInputStream;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import org.apache.nifi.remote.Transaction;
import org.apache.nifi.remote.TransactionCompletion;
import org.apache.nifi.remote.TransferDirection;
import org.apache.nifi.remote.client.SiteToSiteClient;
import org.apache.nifi.remote.protocol.SiteToSiteTransportProtocol;
import org.apache.nifi.remote.util.StandardDataPacket;

/**
 * Sends N FlowFiles of S bytes each to a NiFi input port with the official Site-to-Site client, and
 * prints one JSON line describing what it did and how long it took.
 *
 * <p>Content is deterministic so a test can check every byte: byte {@code j} of FlowFile {@code i} is
 * {@code (i * 31 + j) % 251}. Each FlowFile carries the given attributes plus {@code ref.index=i}.
 *
 * <p>With {@code --file PATH} the content of every FlowFile is that file instead, streamed: a
 * {@code DataPacket} whose {@code InputStream} is a {@code FileInputStream} with the file's size (the
 * way an application hands the client content bigger than its heap); {@code --size} is ignored.
 *
 * <pre>
 * java -cp 'classes:lib/*' org.nifis2s.reference.SendFlowFiles --url http://127.0.0.1:8080/nifi
 *      --port in --transport RAW --count 10 --size 1024 [--batch 100] [--compress] [--attr k=v]...
 *      [--file PATH]
 * </pre>
 */
public final class SendFlowFiles {
    private SendFlowFiles() {
    }

    /** The content byte of FlowFile {@code index} at {@code offset}. */
    static byte contentByte(long index, long offset) {
        return (byte) ((index * 31 + offset) % 251);
    }

    public static void main(String[] args) throws Exception {
        String url = null;
        String port = null;
        String transport = "RAW";
        long count = 1;
        int size = 0;
        int batch = 100;
        boolean compress = false;
        Path file = null;
        Map<String, String> attrs = new LinkedHashMap<>();
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            switch (a) {
                case "--url" -> url = args[++i];
                case "--port" -> port = args[++i];
                case "--transport" -> transport = args[++i].toUpperCase();
                case "--count" -> count = Long.parseLong(args[++i]);
                case "--size" -> size = Integer.parseInt(args[++i]);
                case "--batch" -> batch = Integer.parseInt(args[++i]);
                case "--compress" -> compress = true;
                case "--file" -> file = Path.of(args[++i]);
                case "--attr" -> {
                    String kv = args[++i];
                    int eq = kv.indexOf('=');
                    if (eq < 1) {
                        throw new IllegalArgumentException("--attr wants key=value, got " + kv);
                    }
                    attrs.put(kv.substring(0, eq), kv.substring(eq + 1));
                }
                default -> throw new IllegalArgumentException("unknown argument " + a);
            }
        }
        if (url == null || port == null || batch < 1 || size < 0 || count < 0) {
            System.err.println("usage: --url URL --port NAME [--transport RAW|HTTP] [--count N] [--size BYTES]"
                    + " [--batch N] [--compress] [--attr k=v]... [--file PATH]");
            System.exit(2);
        }

        SiteToSiteClient client = new SiteToSiteClient.Builder()
                .url(url)
                .portName(port)
                .transportProtocol(SiteToSiteTransportProtocol.valueOf(transport))
                .useCompression(compress)
                .timeout(30, TimeUnit.SECONDS)
                .build();
        long fileSize = file == null ? 0 : Files.size(file);
        long started = System.nanoTime();
        long sent = 0;
        long bytes = 0;
        int transactions = 0;
        try {
            byte[] content = new byte[file == null ? size : 0];
            while (sent < count) {
                Transaction tx = client.createTransaction(TransferDirection.SEND);
                if (tx == null) {
                    throw new IllegalStateException("no peer available for port " + port + " at " + url);
                }
                long inTx = 0;
                while (inTx < batch && sent < count) {
                    Map<String, String> ffAttrs = new LinkedHashMap<>(attrs);
                    ffAttrs.put("ref.index", Long.toString(sent));
                    if (file != null) {
                        try (InputStream in = new FileInputStream(file.toFile())) {
                            tx.send(new StandardDataPacket(ffAttrs, in, fileSize));
                        }
                        bytes += fileSize;
                    } else {
                        for (int j = 0; j < size; j++) {
                            content[j] = contentByte(sent, j);
                        }
                        tx.send(content, ffAttrs);
                        bytes += size;
                    }
                    sent++;
                    inTx++;
                }
                tx.confirm();
                TransactionCompletion done = tx.complete();
                if (done.isBackoff()) {
                    System.err.println("NiFi asked to back off (destination full)");
                }
                transactions++;
            }
        } finally {
            client.close();
        }
        double secs = (System.nanoTime() - started) / 1e9;
        System.out.printf(java.util.Locale.ROOT,
                "{\"tool\":\"java-reference\",\"client\":\"nifi-site-to-site-client\",\"transport\":\"%s\","
                        + "\"port\":\"%s\",\"count\":%d,\"size\":%d,\"batch\":%d,\"compress\":%b,\"bytes\":%d,"
                        + "\"transactions\":%d,\"seconds\":%.6f,\"flowfiles_per_sec\":%.1f,\"mib_per_sec\":%.3f}%n",
                transport, port.replace("\"", "\\\""), sent, file == null ? size : fileSize, batch, compress, bytes, transactions, secs,
                sent / secs, bytes / secs / (1024.0 * 1024.0));
    }
}
