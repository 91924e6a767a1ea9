// Writes golden vectors with Apache NiFi's own classes (see ../README.md for how to run it).
// Every FlowFile's attributes go in a LinkedHashMap, so NiFi writes them in a known order.

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.FileOutputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

import org.apache.nifi.remote.codec.StandardFlowFileCodec;
import org.apache.nifi.remote.io.CompressionOutputStream;
import org.apache.nifi.remote.util.StandardDataPacket;
import org.apache.nifi.util.FlowFilePackagerV3;

public class GenVectors {
    /** Deterministic test data, regenerated identically by tests/golden.rs. */
    static byte[] multichunkPlain() {
        byte[] out = new byte[90_000];
        int x = 1;
        for (int i = 0; i < 70_000; i++) {
            x = x * 1103515245 + 12345;
            out[i] = (byte) (x >>> 16);
        }
        byte[] text = "NiFi site-to-site compressed chunk test line\n".getBytes(StandardCharsets.UTF_8);
        for (int i = 70_000; i < out.length; i++) {
            out[i] = text[(i - 70_000) % text.length];
        }
        return out;
    }

    static void write(String dir, String name, byte[] bytes) throws Exception {
        try (OutputStream o = new FileOutputStream(dir + "/" + name)) {
            o.write(bytes);
        }
    }

    public static void main(String[] args) throws Exception {
        String dir = args[0];

        // StandardFlowFileCodec v1 with non-ASCII, non-BMP and NUL characters.
        Map<String, String> attrs = new LinkedHashMap<>();
        attrs.put("filename", "\u00fcn\u00ef.txt");
        attrs.put("cl\u00e9 \uD83D\uDE00", "valeur \u0000 \uD834\uDD1E \u20AC");
        attrs.put("empty", "");
        byte[] content = "content \u2713".getBytes(StandardCharsets.UTF_8);
        ByteArrayOutputStream ff = new ByteArrayOutputStream();
        new StandardFlowFileCodec().encode(
                new StandardDataPacket(attrs, new ByteArrayInputStream(content), content.length), ff);
        write(dir, "java-flowfile-unicode.bin", ff.toByteArray());

        // CompressionOutputStream: an incompressible 64 KiB chunk (compressed > 65536), a partial
        // chunk from flush(), then the rest.
        byte[] plain = multichunkPlain();
        ByteArrayOutputStream z = new ByteArrayOutputStream();
        CompressionOutputStream cos = new CompressionOutputStream(z);
        cos.write(plain, 0, 66_000);
        cos.flush();
        cos.write(plain, 66_000, plain.length - 66_000);
        cos.close();
        write(dir, "java-gzip-multichunk.bin", z.toByteArray());

        // FlowFilePackagerV3: two concatenated packages, one with a 65535-byte value (6-byte length
        // form) and one with a 65534-byte value (2-byte form).
        ByteArrayOutputStream v3 = new ByteArrayOutputStream();
        FlowFilePackagerV3 packager = new FlowFilePackagerV3();
        Map<String, String> a = new LinkedHashMap<>();
        a.put("filename", "a.txt");
        a.put("long", "x".repeat(65_535));
        byte[] ac = "abc".getBytes(StandardCharsets.UTF_8);
        packager.packageFlowFile(new ByteArrayInputStream(ac), v3, a, ac.length);
        Map<String, String> b = new LinkedHashMap<>();
        b.put("filename", "b \uD83D\uDE00.txt");
        b.put("k", "v".repeat(65_534));
        packager.packageFlowFile(new ByteArrayInputStream(new byte[0]), v3, b, 0);
        write(dir, "java-package-v3-boundaries.bin", v3.toByteArray());

        // DataOutputStream.writeUTF: every encoding class, and a lone surrogate (valid for Java).
        ByteArrayOutputStream u = new ByteArrayOutputStream();
        DataOutputStream dos = new DataOutputStream(u);
        dos.writeUTF("a\u0000\uD83D\uDE00\u00e9");
        dos.writeUTF("\u007F\u0080\u07FF\u0800\uFFFF");
        dos.writeUTF("");
        dos.writeUTF("lone \uD800 surrogate");
        write(dir, "java-writeutf.bin", u.toByteArray());
    }
}
