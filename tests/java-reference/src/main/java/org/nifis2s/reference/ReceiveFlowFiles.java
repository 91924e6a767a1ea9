package org.nifis2s.reference;

import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.util.Base64;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

import org.apache.nifi.remote.Transaction;
import org.apache.nifi.remote.TransferDirection;
import org.apache.nifi.remote.client.SiteToSiteClient;
import org.apache.nifi.remote.protocol.DataPacket;
import org.apache.nifi.remote.protocol.SiteToSiteTransportProtocol;

/**
 * Pulls FlowFiles from a NiFi output port with the official Site-to-Site client until N arrived (or a
 * deadline passed), and prints one JSON summary line. With {@code --print}, every FlowFile is first
 * printed as a JSON line {@code {"attributes":{...},"content":"<base64>"}} in the order received.
 *
 * <pre>
 * java -cp 'classes:lib/*' org.nifis2s.reference.ReceiveFlowFiles --url http://127.0.0.1:8080/nifi
 *      --port out --transport RAW --expect 10 [--timeout 60] [--compress] [--print]
 * </pre>
 */
public final class ReceiveFlowFiles {
    private ReceiveFlowFiles() {
    }

    static String json(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                default -> {
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.append('"').toString();
    }

    public static void main(String[] args) throws Exception {
        String url = null;
        String port = null;
        String transport = "RAW";
        long expect = 1;
        long timeoutSecs = 60;
        boolean compress = false;
        boolean print = false;
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            switch (a) {
                case "--url" -> url = args[++i];
                case "--port" -> port = args[++i];
                case "--transport" -> transport = args[++i].toUpperCase();
                case "--expect" -> expect = Long.parseLong(args[++i]);
                case "--timeout" -> timeoutSecs = Long.parseLong(args[++i]);
                case "--compress" -> compress = true;
                case "--print" -> print = true;
                default -> throw new IllegalArgumentException("unknown argument " + a);
            }
        }
        if (url == null || port == null || expect < 0) {
            System.err.println("usage: --url URL --port NAME [--transport RAW|HTTP] [--expect N] [--timeout S]"
                    + " [--compress] [--print]");
            System.exit(2);
        }

        SiteToSiteClient client = new SiteToSiteClient.Builder()
                .url(url)
                .portName(port)
                .transportProtocol(SiteToSiteTransportProtocol.valueOf(transport))
                .useCompression(compress)
                .timeout(30, TimeUnit.SECONDS)
                .build();
        long started = System.nanoTime();
        long deadline = started + TimeUnit.SECONDS.toNanos(timeoutSecs);
        long received = 0;
        long bytes = 0;
        int transactions = 0;
        try {
            while (received < expect && System.nanoTime() < deadline) {
                Transaction tx = client.createTransaction(TransferDirection.RECEIVE);
                if (tx == null) {
                    throw new IllegalStateException("no peer available for port " + port + " at " + url);
                }
                long inTx = 0;
                DataPacket packet;
                while ((packet = tx.receive()) != null) {
                    ByteArrayOutputStream content = new ByteArrayOutputStream();
                    // Not closed: for RAW the stream is a window on the socket, and closing it closes the
                    // connection in the middle of the transaction.
                    InputStream in = packet.getData();
                    in.transferTo(content);
                    if (print) {
                        StringBuilder line = new StringBuilder("{\"attributes\":{");
                        boolean first = true;
                        for (Map.Entry<String, String> e : new TreeMap<>(packet.getAttributes()).entrySet()) {
                            line.append(first ? "" : ",").append(json(e.getKey())).append(':')
                                    .append(json(e.getValue()));
                            first = false;
                        }
                        line.append("},\"content\":\"")
                                .append(Base64.getEncoder().encodeToString(content.toByteArray())).append("\"}");
                        System.out.println(line);
                    }
                    received++;
                    inTx++;
                    bytes += content.size();
                }
                // Confirmed and completed even when empty, as NiFi's own RemoteGroupPort does.
                tx.confirm();
                tx.complete();
                if (inTx == 0) {
                    Thread.sleep(100);
                } else {
                    transactions++;
                }
            }
        } finally {
            client.close();
        }
        double secs = (System.nanoTime() - started) / 1e9;
        System.out.printf(java.util.Locale.ROOT,
                "{\"tool\":\"java-reference\",\"client\":\"nifi-site-to-site-client\",\"direction\":\"receive\","
                        + "\"transport\":\"%s\",\"port\":%s,\"count\":%d,\"expected\":%d,\"compress\":%b,"
                        + "\"bytes\":%d,\"transactions\":%d,\"seconds\":%.6f,\"flowfiles_per_sec\":%.1f,"
                        + "\"mib_per_sec\":%.3f}%n",
                transport, json(port), received, expect, compress, bytes, transactions, secs, received / secs,
                bytes / secs / (1024.0 * 1024.0));
        if (received < expect) {
            System.err.println("received " + received + " of " + expect + " FlowFiles before the deadline");
            System.exit(3);
        }
    }
}
