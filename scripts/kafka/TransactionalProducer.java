import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Properties;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Writes records in Kafka transactions with Apache Kafka's own Java client, the way a
 * transactional producer sharing the topic (a Java service with exactly-once, Kafka
 * Streams) does: its records, then a commit or an abort marker. The tests use it to check
 * that the consumers store committed records only and move past the markers.
 *
 * <p>Usage: {@code scripts/stack.sh kafka-tool scripts/kafka/TransactionalProducer.java
 * <bootstrap> <topic> <transactional.id>}, commands on standard input, one per line:
 * <pre>
 *   send PARTITION VALUE   adds a record (no key, no headers) to the open transaction,
 *                          beginning one if none is open
 *   commit                 commits the open transaction
 *   abort                  writes the open transaction's records, then aborts it
 * </pre>
 * Prints {@code done} and exits 0 once every transaction has ended; any error exits 1.
 */
public final class TransactionalProducer {
    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            throw new IllegalArgumentException("usage: TransactionalProducer <bootstrap> <topic> <transactional.id>");
        }
        String topic = args[1];
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        props.put("transactional.id", args[2]);
        props.put("key.serializer", ByteArraySerializer.class.getName());
        props.put("value.serializer", ByteArraySerializer.class.getName());
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            producer.initTransactions();
            boolean open = false;
            BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
            for (String line; (line = in.readLine()) != null; ) {
                if (line.isBlank()) {
                    continue;
                }
                String[] parts = line.split(" ", 3);
                switch (parts[0]) {
                    case "send" -> {
                        if (parts.length != 3) {
                            throw new IllegalArgumentException("send needs a partition and a value: " + line);
                        }
                        if (!open) {
                            producer.beginTransaction();
                            open = true;
                        }
                        byte[] value = parts[2].getBytes(StandardCharsets.UTF_8);
                        producer.send(new ProducerRecord<>(topic, Integer.parseInt(parts[1]), null, value));
                    }
                    case "commit" -> {
                        producer.commitTransaction();
                        open = false;
                    }
                    case "abort" -> {
                        // Without the flush the records might never reach the log; a test
                        // of aborted records needs them there.
                        producer.flush();
                        producer.abortTransaction();
                        open = false;
                    }
                    default -> throw new IllegalArgumentException("unknown command: " + line);
                }
            }
            if (open) {
                throw new IllegalStateException("the input ended inside a transaction");
            }
        }
        System.out.println("done");
    }
}
